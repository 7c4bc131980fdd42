-- Burst of AccessDenied KMS calls from one principal
-- kms_access_denied_burst: see kms_access_denied_burst.yaml for what it means, references and tests.
SELECT principal, CAST(NULL AS VARCHAR) AS key_arn, account_id, max(aws_region) AS aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       count(*) || ' AccessDenied KMS calls on ' || count(DISTINCT coalesce(key_arn, key_ref, '?')) || ' key(s) within 10 minutes by ' || coalesce(principal, 'an unknown principal') AS summary
FROM (SELECT *, date_bin(INTERVAL '10 minutes', event_time) AS bucket
      FROM window_events
      WHERE error_code IN ('AccessDenied', 'AccessDeniedException'))
GROUP BY principal, account_id, bucket
HAVING count(*) >= 10 OR count(DISTINCT coalesce(key_arn, key_ref)) >= 5
