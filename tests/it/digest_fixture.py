# Writes CloudTrail digests for a tree of log files, as CloudTrail does: hourly per
# account and region, chained, signed with RSA-SHA256 by keys generated here (the
# `cryptography` package: an implementation independent of kms-audit's). Writes the
# `list-public-keys` JSON, a `<digest>.signature` file beside each digest (unless told
# not to) and prints a manifest of the digests (key, signature) on stdout.
#
# usage: python digest_fixture.py TREE KEYS_JSON BUCKET [--rotate-after N] [--no-signature-files]
import base64, datetime as dt, gzip, hashlib, json, os, re, sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

tree, keys_path, bucket = sys.argv[1:4]
rotate_after = int(sys.argv[sys.argv.index("--rotate-after") + 1]) if "--rotate-after" in sys.argv else None
sig_files = "--no-signature-files" not in sys.argv

LOG = re.compile(r"(.*?)(AWSLogs/(?:o-[^/]+/)?(\d{12})/CloudTrail/([^/]+)/\d{4}/\d{2}/\d{2}/\d{12}_CloudTrail_[^_]+_(\d{8}T\d{4}Z)_[^/]+\.json\.gz)$")

def new_key():
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return k, der, hashlib.md5(der).hexdigest()

keys = [new_key()]
if rotate_after is not None:
    keys.append(new_key())
json.dump({"PublicKeyList": [
    {"Value": base64.b64encode(der).decode(), "ValidityStartTime": "2026-01-01T00:00:00+00:00",
     "ValidityEndTime": "2027-01-01T00:00:00+00:00", "Fingerprint": fp}
    for _, der, fp in keys]}, open(keys_path, "w"), indent=1)

def fmt(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")

groups = {}
for root, _, files in os.walk(tree):
    for f in files:
        path = os.path.join(root, f)
        m = LOG.match(os.path.relpath(path, tree).replace(os.sep, "/"))
        if not m:
            continue
        prefix, key, account, region, stamp = m.groups()
        t = dt.datetime.strptime(stamp, "%Y%m%dT%H%MZ").replace(tzinfo=dt.timezone.utc)
        data = gzip.decompress(open(path, "rb").read())
        recs = json.loads(data).get("Records", [])
        times = sorted(r["eventTime"] for r in recs if "eventTime" in r)
        groups.setdefault((prefix, account, region, key.split("/CloudTrail/")[0]), []).append(
            (t, key, hashlib.sha256(data).hexdigest(), times))

out = []
offset = dt.timedelta(minutes=5, seconds=12)
for (prefix, account, region, base), logs in sorted(groups.items()):
    logs.sort()
    first = logs[0][0].replace(minute=0, second=0) + offset
    if first > logs[0][0]:
        first -= dt.timedelta(hours=1)
    end = first + dt.timedelta(hours=1)
    prev = None
    n = 0
    while True:
        start = end - dt.timedelta(hours=1)
        listed = [l for l in logs if start <= l[0] < end]
        if start > logs[-1][0]:
            break
        key_obj, der, fp = keys[1] if rotate_after is not None and n >= rotate_after else keys[0]
        dkey = (f"{prefix}{base}/CloudTrail-Digest/{region}/{end:%Y/%m/%d}/"
                f"{account}_CloudTrail-Digest_{region}_management-trail_us-east-1_{end:%Y%m%dT%H%M%SZ}.json.gz")
        newest = max((x for l in listed for x in l[3][-1:]), default=None)
        oldest = min((x for l in listed for x in l[3][:1]), default=None)
        doc = {
            "awsAccountId": account, "digestStartTime": fmt(start), "digestEndTime": fmt(end),
            "digestS3Bucket": bucket, "digestS3Object": dkey,
            "digestPublicKeyFingerprint": fp, "digestSignatureAlgorithm": "SHA256withRSA",
            "newestEventTime": newest, "oldestEventTime": oldest,
            "previousDigestS3Bucket": bucket if prev else None,
            "previousDigestS3Object": prev["key"] if prev else None,
            "previousDigestHashValue": prev["sha256"] if prev else None,
            "previousDigestHashAlgorithm": "SHA-256" if prev else None,
            "previousDigestSignature": prev["signature"] if prev else None,
            "logFiles": [{"s3Bucket": bucket, "s3Object": prefix + k, "hashValue": h,
                          "hashAlgorithm": "SHA-256",
                          "newestEventTime": ts[-1] if ts else None,
                          "oldestEventTime": ts[0] if ts else None}
                         for _, k, h, ts in listed],
        }
        raw = json.dumps(doc, separators=(",", ":")).encode()
        sha = hashlib.sha256(raw).hexdigest()
        signed = f"{fmt(end)}\n{bucket}/{dkey}\n{sha}\n{prev['signature'] if prev else 'null'}"
        sig = key_obj.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256()).hex()
        path = os.path.join(tree, dkey)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(gzip.compress(raw))
        if sig_files:
            with open(path + ".signature", "w") as f:
                f.write(sig)
        prev = {"key": dkey, "sha256": sha, "signature": sig}
        out.append({"key": dkey, "signature": sig, "logs": len(listed)})
        end += dt.timedelta(hours=1)
        n += 1
print(json.dumps(out))
