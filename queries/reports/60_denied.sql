SELECT principal, key_arn, key_ref, event_name, error_code,
       count(*) AS requests, min(event_time) AS first_seen, max(event_time) AS last_seen,
       array_slice(array_sort(array_agg(DISTINCT source_ip)), 1, 5) AS source_addresses,
       array_slice(array_agg(event_id ORDER BY event_time), 1, 5) AS sample_event_ids
FROM period_events
WHERE error_code IS NOT NULL
GROUP BY principal, key_arn, key_ref, event_name, error_code
ORDER BY requests DESC, principal
