# Shared by the scripts in scripts/: say what is happening, install what is missing, configure a
# throwaway sshd. Source it; it defines functions only.

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
  local missing
  mapfile -t missing < <(missing_packages "${MFT_PACKAGES[@]}")
  compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
  if ((${#missing[@]})); then
    apt_install "${missing[@]}"
  else
    say "system packages present (openssh-server, fuse3, postgresql, prosody, build tools)"
  fi
  ensure_cargo
  ensure_fuse_and_sshd
}

# Prints, once each, the package of each "command-or-file:package" pair whose file is missing.
missing_packages() {
  local pair
  for pair in "$@"; do [ -e "${pair%%:*}" ] || echo "${pair##*:}"; done | sort -u
}

# Installs the packages named, with apt-get. Needs root on a Debian machine.
apt_install() {
  say "installing missing packages: $*"
  [ "$(id -u)" = 0 ] || die "installing packages needs root: run as root, or install: $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null || die "apt-get install $* failed"
}

# Puts cargo on PATH (rustup's default place), or fails saying how to get it.
ensure_cargo() {
  command -v cargo >/dev/null || { [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"; }
  command -v cargo >/dev/null || die "cargo is not installed: install the Rust toolchain (rustup) first"
}

# Makes sure /dev/fuse exists and sshd's privilege-separation directory (the Debian package makes
# it only at boot).
ensure_fuse_and_sshd() {
  [ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
  [ -e /dev/fuse ] || die "/dev/fuse is missing: this machine cannot mount FUSE filesystems"
  mkdir -p /run/sshd
}

# Stops process PID (named NAME in messages): SIGTERM, up to 10 s, then SIGKILL.
stop_pid() {
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  say "$2 (pid $pid) did not stop in 10 s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

# Prints scripts/lib/throwaway-sshd.conf without its comments, filled in for root logging in with
# the keys in AUTHORIZED_KEYS: throwaway_sshd_config PORT HOST_KEY AUTHORIZED_KEYS PID_FILE
throwaway_sshd_config() {
  local text
  text=$(grep -v '^#' "$(dirname "${BASH_SOURCE[0]}")/throwaway-sshd.conf") || die "no throwaway-sshd.conf"
  text=${text//@PORT@/"$1"}
  text=${text//@HOST_KEY@/"$2"}
  text=${text//@AUTHORIZED_KEYS@/"$3"}
  text=${text//@PID_FILE@/"$4"}
  text=${text//@STRICT_MODES@/no}
  text=${text//@PERMIT_ROOT_LOGIN@/prohibit-password}
  text=${text//@ALLOW_USERS@/root}
  printf '%s\n' "$text"
}
