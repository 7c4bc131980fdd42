-- A tag that grants access (ABAC) changed on a key
-- kms_abac_tag_changed: see kms_abac_tag_changed.yaml for what it means, references and tests.
WITH abac AS (
    SELECT DISTINCT tag_key FROM (
        SELECT unnest(resource_tag_keys(key_policy)) AS tag_key FROM history_events WHERE key_policy IS NOT NULL
        UNION ALL
        SELECT unnest(resource_tag_keys(key_policy)) AS tag_key FROM window_events WHERE key_policy IS NOT NULL
        UNION ALL
        SELECT tag_key FROM configured_abac_tag_keys)
),
changes AS (
    SELECT *, unnest(tag_keys(request_parameters)) AS tag_key
    FROM window_events
    WHERE event_name IN ('TagResource', 'UntagResource') AND error_code IS NULL
)
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(DISTINCT event_id) AS event_ids,
       array_to_string(array_agg(DISTINCT event_name), ', ') || ' of access-granting tag(s) '
         || array_to_string(array_agg(DISTINCT tag_key), ', ') || ' on ' || coalesce(key_arn, 'a key')
         || ' by ' || coalesce(principal, 'an unknown principal') AS summary
FROM changes
WHERE tag_key IN (SELECT tag_key FROM abac)
GROUP BY principal, key_arn, account_id, aws_region
