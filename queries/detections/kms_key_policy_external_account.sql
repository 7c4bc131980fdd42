-- KMS key policy grants an account outside the trusted set
-- kms_key_policy_external_account: see kms_key_policy_external_account.yaml for what it means, references and tests.
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(DISTINCT event_id) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(DISTINCT event_id) AS event_ids,
       'Key policy of ' || coalesce(key_arn, 'a key') || ' grants external account(s) ' || array_to_string(array_agg(DISTINCT f['value']), ', ') || ', set by ' || coalesce(principal, 'an unknown principal') AS summary
FROM (SELECT *, unnest(policy_findings(key_policy)) AS f
      FROM window_events
      WHERE event_name IN ('PutKeyPolicy', 'CreateKey', 'ReplicateKey') AND error_code IS NULL AND key_policy IS NOT NULL)
WHERE f['kind'] = 'account_principal' AND f['value'] NOT IN (SELECT account_id FROM trusted_accounts)
GROUP BY principal, key_arn, account_id, aws_region
