-- The key that encrypts the trail disabled or scheduled for deletion
-- kms_trail_key_disabled: see kms_trail_key_disabled.yaml for what it means, references and tests.
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       max(event_name) || ' of ' || coalesce(key_arn, max(key_ref), 'a key') || ', the key that encrypts the CloudTrail trail, by '
         || coalesce(principal, 'an unknown principal') || ': the trail cannot write logs with it' AS summary
FROM window_events
WHERE event_name IN ('DisableKey', 'ScheduleKeyDeletion') AND error_code IS NULL
  AND EXISTS (SELECT 1 FROM trail_keys t
              WHERE t.key = key_arn OR t.key = key_id OR t.key = key_ref
                 OR (key_arn IS NOT NULL AND key_arn LIKE '%/' || t.key))
GROUP BY principal, key_arn, account_id, aws_region
