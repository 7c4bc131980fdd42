-- ReEncrypt into a key of another account
-- kms_reencrypt_to_external_key: see kms_reencrypt_to_external_key.yaml for what it means, references and tests.
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       'ReEncrypt from ' || coalesce(key_arn, 'a key') || ' into ' || max(destination_key_arn) || ' by ' || coalesce(principal, 'an unknown principal') AS summary
FROM window_events
WHERE event_name = 'ReEncrypt' AND error_code IS NULL AND destination_key_account IS NOT NULL AND destination_key_account NOT IN (SELECT account_id FROM trusted_accounts)
GROUP BY principal, key_arn, account_id, aws_region
