-- KMS called through a VPC endpoint owned by an untrusted account
-- kms_vpce_untrusted: see kms_vpce_untrusted.yaml for what it means, references and tests.
SELECT principal, max(key_arn) AS key_arn, account_id, max(aws_region) AS aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       count(*) || ' KMS call(s) by ' || coalesce(principal, 'an unknown principal') || ' through VPC endpoint '
         || vpc_endpoint_id || ' of untrusted account ' || vpc_endpoint_account_id AS summary,
       vpc_endpoint_id AS dedup_on
FROM window_events
WHERE vpc_endpoint_id IS NOT NULL AND vpc_endpoint_account_id IS NOT NULL
  AND vpc_endpoint_account_id NOT IN (SELECT account_id FROM trusted_accounts)
GROUP BY principal, account_id, vpc_endpoint_id, vpc_endpoint_account_id
