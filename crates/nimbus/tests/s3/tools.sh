#!/usr/bin/env bash
# S3 tools people use, against a Nimbus S3 endpoint: s3cmd and rclone (both
# from Debian), and plain curl for a public object.
#
# usage: tools.sh ENDPOINT KEY SECRET WORKDIR
# Prints one line per check; exits non-zero on the first failure.
set -euo pipefail
url=$1 key=$2 secret=$3 work=$4
hostport=${url#http://}
fail() { echo "FAILED: $*" >&2; exit 1; }

mkdir -p "$work/up/sub" "$work/down-s3cmd" "$work/down-rclone"
for i in 1 2 3; do head -c $((i * 70000)) /dev/urandom > "$work/up/file$i.bin"; done
echo "nested" > "$work/up/sub/nested.txt"
echo "with space" > "$work/up/sub/a name+plus.txt"

# s3cmd: its own config, path-style, plain HTTP, SigV4.
cat > "$work/s3cfg" <<CFG
[default]
access_key = $key
secret_key = $secret
host_base = $hostport
host_bucket = $hostport
use_https = False
signature_v2 = False
bucket_location = us-east-1
CFG
s3c() { s3cmd -c "$work/s3cfg" "$@"; }
s3c mb s3://tools-s3cmd >/dev/null
s3c sync "$work/up/" s3://tools-s3cmd/ >/dev/null
# Listed first, then searched: under pipefail, `s3c ls | grep -q` fails
# whenever grep exits before s3cmd has written its last line (SIGPIPE).
listing=$(s3c ls -r s3://tools-s3cmd/)
echo "$listing" | grep -q "sub/a name+plus.txt" || fail "s3cmd ls: $listing"
s3c sync s3://tools-s3cmd/ "$work/down-s3cmd/" >/dev/null
diff -r "$work/up" "$work/down-s3cmd" || fail "s3cmd round trip differs"
# A second sync uploads nothing: sizes and ETags match.
[ -z "$(s3c sync --dry-run "$work/up/" s3://tools-s3cmd/ | grep -i upload || true)" ] || fail "s3cmd resync uploads again"
s3c setacl --acl-public s3://tools-s3cmd/file1.bin >/dev/null
[ "$(curl -s -o /dev/null -w '%{http_code}' "$url/tools-s3cmd/file1.bin")" = 200 ] || fail "public file not served"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$url/tools-s3cmd/file2.bin")" = 403 ] || fail "private file served"
curl -s "$url/tools-s3cmd/file1.bin" | cmp - "$work/up/file1.bin" || fail "public body differs"
s3c del -r --force s3://tools-s3cmd/ >/dev/null
s3c rb s3://tools-s3cmd >/dev/null
echo "s3cmd ok"

# rclone: an S3 remote from the environment (no config file).
unset AWS_CA_BUNDLE
export RCLONE_CONFIG_N_TYPE=s3 RCLONE_CONFIG_N_PROVIDER=Other RCLONE_CONFIG_N_ENDPOINT=$url \
  RCLONE_CONFIG_N_ACCESS_KEY_ID=$key RCLONE_CONFIG_N_SECRET_ACCESS_KEY=$secret \
  RCLONE_CONFIG_N_FORCE_PATH_STYLE=true RCLONE_CONFIG_FILE=/dev/null
rc() { rclone --config /dev/null "$@"; }
rc mkdir n:tools-rclone
rc sync "$work/up" n:tools-rclone
rc check "$work/up" n:tools-rclone 2>/dev/null || fail "rclone check after upload"
rc sync n:tools-rclone "$work/down-rclone"
diff -r "$work/up" "$work/down-rclone" || fail "rclone round trip differs"
# Versions: overwrite and delete under versioning, then list every version.
[ "$(rc backend versioning n:tools-rclone Enabled)" = Enabled ] || fail "rclone backend versioning"
echo "v2" > "$work/v.txt"
rc copyto "$work/up/sub/nested.txt" n:tools-rclone/v.txt
rc copyto "$work/v.txt" n:tools-rclone/v.txt
rc deletefile n:tools-rclone/file3.bin
listed=$(rc lsf --s3-versions n:tools-rclone)
echo "$listed" | grep -q "^file3-v" || fail "rclone --s3-versions does not list the deleted file's version: $listed"
echo "$listed" | grep -q "^v-v" || fail "rclone --s3-versions does not list v.txt's old version: $listed"
rc purge --s3-versions n:tools-rclone
s3c ls | grep -q tools-rclone && fail "rclone purge left the bucket"
echo "rclone ok"
