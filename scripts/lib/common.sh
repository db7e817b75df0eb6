# Shared by the scripts in scripts/: say what is happening, install what is missing.
# Source it; it defines functions only.

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The Debian packages the node and its tests need, as "command-or-file:package" pairs.
MFT_PACKAGES=(
  /usr/sbin/sshd:openssh-server
  /usr/bin/ssh-keygen:openssh-client
  /usr/bin/sftp:openssh-client
  /usr/bin/fusermount3:fuse3
  /usr/bin/sshfs:sshfs
  /usr/bin/pkg-config:pkg-config
  /usr/bin/cc:build-essential
  /usr/include/postgresql/libpq-fe.h:libpq-dev
  /usr/include/sqlite3.h:libsqlite3-dev
  /usr/bin/sqlite3:sqlite3
  /usr/bin/psql:postgresql-client
  /usr/bin/curl:curl
  /usr/bin/unshare:util-linux
  /usr/bin/dpkg-shlibdeps:dpkg-dev
  /usr/bin/help2man:help2man
  /usr/bin/jq:jq
  /usr/bin/lintian:lintian
  /usr/sbin/debootstrap:debootstrap
  /usr/bin/systemd-nspawn:systemd-container
  /usr/bin/nsenter:util-linux
  /usr/bin/prosody:prosody
  /usr/bin/chromium:chromium
  /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf:fonts-liberation
  /usr/bin/node:nodejs
  /usr/bin/npm:npm
)

# Installs, with apt-get, each package whose file is missing; PostgreSQL's server is checked
# by its versioned directory. Needs root on a Debian machine.
ensure_packages() {
  local missing=() pair
  for pair in "${MFT_PACKAGES[@]}"; do
    [ -e "${pair%%:*}" ] || missing+=("${pair##*:}")
  done
  compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
  if ((${#missing[@]})); then
    # shellcheck disable=SC2207
    missing=($(printf '%s\n' "${missing[@]}" | sort -u))
    say "installing missing packages: ${missing[*]}"
    [ "$(id -u)" = 0 ] || die "installing packages needs root: run as root, or install: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
  else
    say "system packages present (openssh-server, fuse3, postgresql, prosody, build tools)"
  fi
  command -v cargo >/dev/null || { [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"; }
  command -v cargo >/dev/null || die "cargo is not installed: install the Rust toolchain (rustup) first"
  [ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
  [ -e /dev/fuse ] || die "/dev/fuse is missing: this machine cannot mount FUSE filesystems"
  mkdir -p /run/sshd
}
