-- Imported key material that expires soon, or expired and was deleted
-- kms_key_material_expires: see kms_key_material_expires.yaml for what it means, references and tests.
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       CASE WHEN event_name = 'DeleteExpiredKeyMaterial'
            THEN 'The imported key material of ' || coalesce(key_arn, 'a key') || ' expired and KMS deleted it: the key cannot encrypt or decrypt until the same material is imported again'
            ELSE 'ImportKeyMaterial on ' || coalesce(key_arn, max(key_ref), 'a key') || ' by ' || coalesce(principal, 'an unknown principal')
                 || ' with material that expires ' || coalesce(max(json_get(request_parameters, 'validTo')), '?')
                 || ': the key stops working then' END AS summary,
       CASE WHEN event_name = 'DeleteExpiredKeyMaterial' THEN 'critical' ELSE 'high' END AS severity,
       event_name AS dedup_on
FROM window_events
WHERE error_code IS NULL
  AND (event_name = 'DeleteExpiredKeyMaterial'
       OR (event_name = 'ImportKeyMaterial'
           AND json_get(request_parameters, 'expirationModel') = 'KEY_MATERIAL_EXPIRES'
           AND kms_time(json_get(request_parameters, 'validTo')) < event_time + INTERVAL '30 days'))
GROUP BY principal, key_arn, account_id, aws_region, event_name
