SELECT principal, key_arn, event_name,
       count(*) AS calls,
       count(*) FILTER (WHERE error_code IS NOT NULL) AS failed,
       array_distinct(flatten(array_agg(map_keys(encryption_context)))) AS context_keys,
       count(*) FILTER (WHERE via_aws_service) AS via_aws_service,
       count(*) FILTER (WHERE vpc_endpoint_id IS NOT NULL) AS via_vpc_endpoint,
       array_slice(array_sort(array_agg(DISTINCT source_ip)), 1, 5) AS source_addresses,
       min(event_time) AS first_seen, max(event_time) AS last_seen,
       array_slice(array_agg(event_id ORDER BY event_time), 1, 3) AS sample_event_ids
FROM period_events
WHERE key_arn IS NOT NULL
GROUP BY principal, key_arn, event_name
ORDER BY calls DESC, principal, key_arn, event_name
