-- KMS key policy allows a public principal
-- kms_key_policy_public: see kms_key_policy_public.yaml for what it means, references and tests.
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(DISTINCT event_id) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(DISTINCT event_id) AS event_ids,
       'Key policy of ' || coalesce(key_arn, 'a key') || ' set by ' || coalesce(principal, 'an unknown principal') || ' '
         || CASE WHEN bool_or(f['kind'] = 'public_principal')
                 THEN 'allows a public principal (statement ' || coalesce(max(f['sid']) FILTER (WHERE f['kind'] = 'public_principal'), 'without Sid') || ')'
                 WHEN bool_or(f['kind'] = 'not_principal_allow')
                 THEN 'allows everyone but a NotPrincipal list (statement ' || coalesce(max(f['sid']) FILTER (WHERE f['kind'] = 'not_principal_allow'), 'without Sid') || ')'
                 ELSE 'cannot be read (' || max(f['value']) || '): what it grants is unknown' END AS summary,
       CASE WHEN bool_or(f['kind'] IN ('public_principal', 'not_principal_allow')) THEN 'critical' ELSE 'high' END AS severity
FROM (SELECT *, unnest(policy_findings(key_policy)) AS f
      FROM window_events
      WHERE event_name IN ('PutKeyPolicy', 'CreateKey', 'ReplicateKey') AND error_code IS NULL AND key_policy IS NOT NULL)
WHERE f['kind'] IN ('public_principal', 'not_principal_allow', 'unparseable')
GROUP BY principal, key_arn, account_id, aws_region
