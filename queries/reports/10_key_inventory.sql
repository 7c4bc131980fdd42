WITH ev AS (
    SELECT * FROM lake_events WHERE key_arn IS NOT NULL
),
keys AS (
    SELECT key_arn, min(key_account) AS account_id, min(key_region) AS region,
           min(event_time) AS first_seen
    FROM ev GROUP BY key_arn
),
created AS (
    SELECT key_arn, min(event_time) AS created,
           first_value(key_origin ORDER BY event_time) AS origin,
           first_value(key_spec ORDER BY event_time) AS key_spec,
           first_value(event_id ORDER BY event_time) AS created_event_id
    FROM ev WHERE event_name = 'CreateKey' AND error_code IS NULL GROUP BY key_arn
),
aliases AS (
    SELECT key_arn, array_agg(DISTINCT alias_name) AS aliases
    FROM ev WHERE event_name IN ('CreateAlias', 'UpdateAlias') AND alias_name IS NOT NULL
      AND error_code IS NULL
    GROUP BY key_arn
),
lifecycle AS (
    SELECT key_arn,
           last_value(CASE event_name
               WHEN 'CreateKey' THEN 'Enabled'
               WHEN 'EnableKey' THEN 'Enabled'
               WHEN 'DisableKey' THEN 'Disabled'
               WHEN 'ScheduleKeyDeletion' THEN 'PendingDeletion'
               WHEN 'CancelKeyDeletion' THEN 'Disabled'
               WHEN 'DeleteImportedKeyMaterial' THEN 'PendingImport'
               WHEN 'ImportKeyMaterial' THEN 'Enabled'
           END ORDER BY event_time) AS state,
           last_value(event_id ORDER BY event_time) AS state_event_id,
           max(event_time) AS state_since
    FROM ev
    WHERE error_code IS NULL
      AND event_name IN ('CreateKey', 'EnableKey', 'DisableKey', 'ScheduleKeyDeletion',
                         'CancelKeyDeletion', 'DeleteImportedKeyMaterial', 'ImportKeyMaterial')
    GROUP BY key_arn
),
used AS (
    SELECT key_arn, count(*) AS uses, max(event_time) AS last_used,
           count(DISTINCT principal) AS principals
    FROM period_events
    WHERE error_code IS NULL
      AND event_name IN ('Decrypt', 'Encrypt', 'GenerateDataKey', 'GenerateDataKeyWithoutPlaintext',
                         'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext', 'ReEncrypt',
                         'Sign', 'Verify', 'GenerateMac', 'VerifyMac')
    GROUP BY key_arn
)
SELECT k.key_arn, k.account_id, k.region, a.aliases,
       c.origin, c.key_spec,
       k.key_arn LIKE '%:key/mrk-%' AS multi_region,
       coalesce(l.state, 'unknown (no lifecycle event)') AS state_at_period_end,
       l.state_since, l.state_event_id,
       c.created, c.created_event_id, k.first_seen,
       u.last_used, coalesce(u.uses, 0) AS uses_in_period, coalesce(u.principals, 0) AS principals_in_period,
       coalesce(u.uses, 0) = 0 AS unused_in_period
FROM keys k
LEFT JOIN created c ON c.key_arn = k.key_arn
LEFT JOIN aliases a ON a.key_arn = k.key_arn
LEFT JOIN lifecycle l ON l.key_arn = k.key_arn
LEFT JOIN used u ON u.key_arn = k.key_arn
ORDER BY k.account_id, k.key_arn
