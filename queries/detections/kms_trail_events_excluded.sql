-- KMS events left out of the trail
-- kms_trail_events_excluded: see kms_trail_events_excluded.yaml for what it means, references and tests.
SELECT principal, CAST(NULL AS VARCHAR) AS key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       max(event_name) || ' on trail ' || coalesce(target, 'unknown') || ' by ' || coalesce(principal, 'an unknown principal')
         || ': ' || CASE max(impact)
              WHEN 'kms_events_excluded' THEN 'KMS events are no longer logged'
              WHEN 'management_events_excluded' THEN 'management events (all KMS calls) are no longer logged'
              ELSE 'read events (Decrypt, Encrypt, GenerateDataKey) are no longer logged' END AS summary,
       CASE WHEN max(impact) = 'read_events_excluded' THEN 'high' ELSE 'critical' END AS severity,
       target AS dedup_on
FROM window_trail_events
WHERE impact IN ('kms_events_excluded', 'management_events_excluded', 'read_events_excluded')
  AND error_code IS NULL
GROUP BY principal, account_id, aws_region, target
