-- CloudTrail logging stopped or the trail deleted
-- kms_trail_logging_stopped: see kms_trail_logging_stopped.yaml for what it means, references and tests.
SELECT principal, CAST(NULL AS VARCHAR) AS key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       max(event_name) || ' of trail ' || coalesce(target, 'unknown') || ' by ' || coalesce(principal, 'an unknown principal')
         || ': no KMS call is recorded from then on' AS summary,
       target AS dedup_on
FROM window_trail_events
WHERE event_name IN ('StopLogging', 'DeleteTrail') AND error_code IS NULL
GROUP BY principal, account_id, aws_region, target
