WITH keys AS (
    SELECT DISTINCT key_arn FROM lake_events WHERE key_arn IS NOT NULL
),
setting AS (
    SELECT key_arn,
           last_value(event_name ORDER BY event_time) AS last_setting,
           max(event_time) AS setting_time,
           last_value(principal ORDER BY event_time) AS setting_principal,
           last_value(event_id ORDER BY event_time) AS setting_event_id
    FROM lake_events
    WHERE event_name IN ('EnableKeyRotation', 'DisableKeyRotation') AND error_code IS NULL
    GROUP BY key_arn
),
rotated AS (
    SELECT key_arn, max(event_time) AS last_rotation,
           last_value(event_id ORDER BY event_time) AS rotation_event_id
    FROM lake_events
    WHERE event_name IN ('RotateKey', 'RotateKeyOnDemand') AND error_code IS NULL
    GROUP BY key_arn
)
SELECT k.key_arn,
       CASE WHEN s.last_setting = 'DisableKeyRotation' THEN 'rotation disabled'
            WHEN s.last_setting = 'EnableKeyRotation' THEN 'rotation enabled'
            ELSE 'no evidence' END AS rotation,
       s.setting_time, s.setting_principal, s.setting_event_id,
       r.last_rotation, r.rotation_event_id,
       CAST(floor((CAST(p.until_micros AS DOUBLE) - CAST(to_unixtime(r.last_rotation) AS DOUBLE) * 1e6) / 86400e6) AS BIGINT) AS days_since_rotation,
       (s.last_setting = 'DisableKeyRotation' OR (s.last_setting IS NULL AND r.last_rotation IS NULL)) AS finding
FROM keys k
CROSS JOIN report_period p
LEFT JOIN setting s ON s.key_arn = k.key_arn
LEFT JOIN rotated r ON r.key_arn = k.key_arn
ORDER BY finding DESC, k.key_arn
