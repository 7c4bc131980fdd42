-- KMS key policy grants an account, organization or VPC endpoint outside the trusted set
-- kms_key_policy_external_account: see kms_key_policy_external_account.yaml for what it means, references and tests.
WITH findings AS (
    SELECT *, unnest(policy_findings(key_policy)) AS f
    FROM window_events
    WHERE event_name IN ('PutKeyPolicy', 'CreateKey', 'ReplicateKey') AND error_code IS NULL AND key_policy IS NOT NULL
),
outside AS (
    SELECT *, 'account ' || f['value'] AS who FROM findings
    WHERE f['kind'] = 'account_principal' AND f['value'] NOT IN (SELECT account_id FROM trusted_accounts)
    UNION ALL
    -- Without a known organization (no organization trail, none configured) there is
    -- nothing to compare with: such findings are the report's to show.
    SELECT *, 'organization ' || f['value'] AS who FROM findings
    WHERE f['kind'] = 'org_principal' AND EXISTS (SELECT 1 FROM trusted_orgs)
      AND f['value'] NOT IN (SELECT org_id FROM trusted_orgs)
    UNION ALL
    SELECT *, 'VPC endpoint ' || f['value'] || ' (never seen in use by a trusted account)' AS who FROM findings
    WHERE f['kind'] = 'endpoint_principal' AND f['value'] NOT IN (SELECT vpc_endpoint_id FROM known_vpc_endpoints)
)
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(DISTINCT event_id) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(DISTINCT event_id) AS event_ids,
       'Key policy of ' || coalesce(key_arn, 'a key') || ' grants external ' || array_to_string(array_agg(DISTINCT who), ', ') || ', set by ' || coalesce(principal, 'an unknown principal') AS summary
FROM outside
GROUP BY principal, key_arn, account_id, aws_region
