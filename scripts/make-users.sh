#!/bin/sh
# Users, passwords and the ACL for the secure profile (broker-config/secure.conf).
#
#   scripts/make-users.sh [OUTDIR] [CONSUMER...]
#
# Writes into OUTDIR (default: secrets/, ignored by git):
#   passwd         Mosquitto password file (hashed with mosquitto_passwd) for the users
#                  engine, operator, board, running-order, class-poles, championship
#                  and every extra CONSUMER (a custom consumer, named as `lapcast consume NAME`)
#   acl.conf       broker-config/acl.conf plus a block for every extra CONSUMER
#   USER.env       LAPCAST_MQTT_USERNAME / _PASSWORD / _CA_FILE for each user, mode 600:
#                  `set -a; . secrets/engine.env; set +a` before a lapcast command
#   mosquitto-data/  the broker's persistence folder
# Passwords are random; a user that already has OUTDIR/USER.env keeps its password, so
# the script can be run again to add a consumer.
set -eu

out=${1:-secrets}
[ $# -gt 0 ] && shift
here=$(cd "$(dirname "$0")" && pwd)
base_acl="$here/../broker-config/acl.conf"

command -v mosquitto_passwd >/dev/null 2>&1 || {
    echo "make-users: mosquitto_passwd not found (apt-get install -y mosquitto)" >&2
    exit 1
}

# The ACL block of a consumer: keep in step with the consumers' blocks in acl.conf
# (tests/test_secure_profile.py checks that they match).
consumer_block() {
    p="lapcast/v1/sessions/+"
    cat <<EOF

user $1
topic read $p/events
topic read $p/meta
topic read $p/status
topic read $p/catchup/reply/$1/#
topic write $p/catchup/request
topic write $p/dead-letter
topic readwrite $p/state/$1
topic readwrite $p/state/$1/changes
topic readwrite $p/consumers/$1/status
EOF
}

umask 077
mkdir -p "$out/mosquitto-data"
out_abs=$(cd "$out" && pwd)

users="engine operator board running-order class-poles championship"
cp "$base_acl" "$out/acl.conf.tmp"
for name in "$@"; do
    case $name in
        ""|-*|*[!a-z0-9_-]*)
            echo "make-users: consumer name '$name': use lowercase letters, digits, - and _" >&2
            rm -f "$out/acl.conf.tmp"
            exit 2 ;;
    esac
    case " $users " in *" $name "*) continue ;; esac
    users="$users $name"
    consumer_block "$name" >>"$out/acl.conf.tmp"
done
mv "$out/acl.conf.tmp" "$out/acl.conf"
chmod 644 "$out/acl.conf"

# Plain "user:password" lines, hashed in place by mosquitto_passwd -U: passwords never
# appear on a command line (visible in ps).
plain="$out/passwd.tmp"
: >"$plain"
for user in $users; do
    env_file="$out/$user.env"
    password=""
    if [ -s "$env_file" ]; then
        password=$(sed -n 's/^LAPCAST_MQTT_PASSWORD=//p' "$env_file")
    fi
    if [ -z "$password" ]; then
        password=$(openssl rand -base64 24 | tr -d '/+=\n')
    fi
    printf '%s:%s\n' "$user" "$password" >>"$plain"
    {
        echo "LAPCAST_MQTT_USERNAME=$user"
        echo "LAPCAST_MQTT_PASSWORD=$password"
        echo "LAPCAST_MQTT_CA_FILE=$out_abs/ca.crt"
    } >"$env_file"
done
mosquitto_passwd -U "$plain" >/dev/null
mv "$plain" "$out/passwd"
chmod 600 "$out/passwd"
echo "make-users: $out/passwd and $out/acl.conf for: $users"
