SELECT event_time, event_name, key_arn, principal, principal_type, mfa_authenticated,
       source_ip, pending_window_in_days, error_code,
       CASE WHEN error_code IS NOT NULL THEN 'attempt failed'
            WHEN event_name IN ('ScheduleKeyDeletion', 'DeleteImportedKeyMaterial', 'DisableKey') THEN 'destructive'
            ELSE 'restorative' END AS effect,
       event_id
FROM period_events
WHERE event_name IN ('DisableKey', 'EnableKey', 'ScheduleKeyDeletion', 'CancelKeyDeletion',
                     'ImportKeyMaterial', 'DeleteImportedKeyMaterial', 'ReplicateKey',
                     'UpdatePrimaryRegion')
ORDER BY event_time, event_id
