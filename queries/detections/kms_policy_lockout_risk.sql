-- A key policy that leaves the key's own account no way to change it
-- kms_policy_lockout_risk: see kms_policy_lockout_risk.yaml for what it means, references and tests.
WITH pol AS (
  SELECT * FROM window_events
  WHERE event_name IN ('PutKeyPolicy', 'CreateKey', 'ReplicateKey') AND error_code IS NULL
    AND key_policy IS NOT NULL AND key_account IS NOT NULL
),
found AS (
  SELECT event_id, f['kind'] AS kind, f['value'] AS value
  FROM (SELECT event_id, unnest(policy_findings(key_policy)) AS f FROM pol)
)
SELECT p.principal, p.key_arn, p.account_id, p.aws_region,
       min(p.event_time) AS first_seen, max(p.event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT p.source_ip) AS source_ips, array_agg(p.event_id) AS event_ids,
       'Key policy of ' || coalesce(p.key_arn, 'a key') || ' set by ' || coalesce(p.principal, 'an unknown principal')
         || ' no longer lets account ' || p.key_account || ' (its root) change it: if the principals it names are deleted, the key becomes unmanageable' AS summary
FROM pol p
WHERE NOT EXISTS (SELECT 1 FROM found r WHERE r.event_id = p.event_id AND r.kind = 'root_access' AND r.value = p.key_account)
  AND NOT EXISTS (SELECT 1 FROM found u WHERE u.event_id = p.event_id AND u.kind = 'unparseable')
GROUP BY p.principal, p.key_arn, p.account_id, p.aws_region, p.key_account
