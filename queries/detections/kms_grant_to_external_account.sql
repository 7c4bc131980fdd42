-- KMS grant to an external account
-- kms_grant_to_external_account: see kms_grant_to_external_account.yaml for what it means, references and tests.
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       'CreateGrant on ' || coalesce(key_arn, 'a key') || ' to ' || max(grantee_principal) || ' by ' || coalesce(principal, 'an unknown principal') AS summary
FROM window_events
WHERE event_name = 'CreateGrant' AND error_code IS NULL AND arn_account(grantee_principal) IS NOT NULL AND arn_account(grantee_principal) NOT IN (SELECT account_id FROM trusted_accounts)
GROUP BY principal, key_arn, account_id, aws_region
