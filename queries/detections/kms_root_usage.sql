-- Root user used KMS
-- kms_root_usage: see kms_root_usage.yaml for what it means, references and tests.
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       'The root user of ' || coalesce(account_id, '?') || ' called ' || array_to_string(array_agg(DISTINCT event_name), ', ') AS summary
FROM window_events
WHERE principal_type = 'Root'
GROUP BY principal, key_arn, account_id, aws_region
