-- KMS key created with key material from outside AWS KMS
-- kms_key_created_with_outside_material: see kms_key_created_with_outside_material.yaml for what it means, references and tests.
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       'CreateKey with origin ' || max(key_origin) || ' (' || coalesce(key_arn, 'a new key')
         || ') by ' || coalesce(principal, 'an unknown principal') AS summary
FROM window_events
WHERE event_name = 'CreateKey' AND error_code IS NULL AND NOT via_aws_service
  AND key_origin IS NOT NULL AND key_origin <> 'AWS_KMS'
GROUP BY principal, key_arn, account_id, aws_region
