-- Custom key store created, changed, disconnected or deleted
-- kms_custom_key_store_changed: see kms_custom_key_store_changed.yaml for what it means, references and tests.
SELECT principal, max(key_arn) AS key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       string_agg(DISTINCT event_name, ', ') || ' of custom key store '
         || coalesce(store, 'unknown') || ' by ' || coalesce(principal, 'an unknown principal') AS summary,
       CASE WHEN bool_or(event_name IN ('DisconnectCustomKeyStore', 'DeleteCustomKeyStore'))
            THEN 'critical' ELSE 'high' END AS severity,
       store AS dedup_on
FROM (
  SELECT *, regexp_match(request_parameters, '"customKeyStoreId"\s*:\s*"([^"]+)"')[1] AS store
  FROM window_events
  WHERE event_name IN ('CreateCustomKeyStore', 'UpdateCustomKeyStore',
                       'DisconnectCustomKeyStore', 'DeleteCustomKeyStore')
    AND error_code IS NULL
)
GROUP BY principal, account_id, aws_region, store
