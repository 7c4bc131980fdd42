-- Imported key material imported or deleted
-- kms_imported_key_material_changed: see kms_imported_key_material_changed.yaml for what it means, references and tests.
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       event_name || ' on ' || coalesce(key_arn, max(key_ref), 'a key') || ' by ' || coalesce(principal, 'an unknown principal') AS summary,
       CASE WHEN event_name = 'DeleteImportedKeyMaterial' THEN 'high' ELSE 'medium' END AS severity,
       event_name AS dedup_on
FROM window_events
WHERE error_code IS NULL
  AND (event_name = 'DeleteImportedKeyMaterial'
       -- Importing the key's own material again (after a deletion or an expiry) is upkeep;
       -- new material changes what protects new data. Expiring material has its own rule.
       OR (event_name = 'ImportKeyMaterial'
           AND json_get(request_parameters, 'importType') = 'NEW_KEY_MATERIAL'))
GROUP BY principal, key_arn, account_id, aws_region, event_name
