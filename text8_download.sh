#!/usr/bin/env bash
# Fetch and verify text8.zip, the course's data (http://mattmahoney.net/dc/text8.zip).
#
# Usage: bash text8_download.sh [DIR]     saves DIR/text8.zip (DIR defaults to .)
#
# Like the course's maybe_download, it prints "Found and verified text8.zip" once the file
# has the expected size and is a sound zip holding the member `text8`. The download goes to
# DIR/text8.zip.part first, which a rerun resumes; a text8.zip already in DIR is never
# overwritten or deleted. Needs curl or wget, and unzip or python3.
#
# Environment:
#   TEXT8_URL   where to download from (a mirror; the tests use a local server)
#   TEXT8_SIZE  expected size in bytes, default 31344016; for the tests only, and a note is
#               printed whenever it differs from the default.
set -euo pipefail

readonly PROG="text8_download.sh"
readonly DEFAULT_SIZE=31344016
readonly URL="${TEXT8_URL:-http://mattmahoney.net/dc/text8.zip}"
readonly SIZE="${TEXT8_SIZE:-$DEFAULT_SIZE}"

usage() {
  printf '%s\n' \
    "Usage: bash $PROG [DIR]" \
    "Download $URL into DIR/text8.zip (DIR defaults to the current directory)" \
    "and verify it: $SIZE bytes, a sound zip holding 'text8'. Reruns resume a partial" \
    "download (DIR/text8.zip.part) and never touch an existing DIR/text8.zip." \
    "Environment: TEXT8_URL (a mirror), TEXT8_SIZE (expected bytes; for tests)."
}

die() {
  echo "$PROG: $*" >&2
  exit 1
}

file_size() {  # bytes in file $1
  local bytes
  bytes=$(wc -c < "$1")
  echo $((bytes))  # BSD wc pads with spaces
}

zip_ok() {  # true if $1 is a zip whose members all pass their CRC and that holds `text8`
  local names
  if command -v unzip > /dev/null; then
    unzip -tq "$1" > /dev/null 2>&1 || return 1
    names=$(unzip -Z1 "$1" 2> /dev/null) || return 1
    [[ $'\n'$names$'\n' == *$'\n'text8$'\n'* ]]
  else
    python3 -c 'import sys, zipfile
try:
    with zipfile.ZipFile(sys.argv[1]) as z:
        sys.exit(z.testzip() is not None or "text8" not in z.namelist())
except (OSError, zipfile.BadZipFile, EOFError, ValueError):
    sys.exit(1)' "$1" 2> /dev/null
  fi
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  -*) die "unknown option '$1'; usage: bash $PROG [DIR]" ;;
esac
(($# <= 1)) || die "expected at most one argument, the directory; usage: bash $PROG [DIR]"
readonly DIR="${1:-.}"
readonly TARGET="$DIR/text8.zip"
readonly PART="$DIR/text8.zip.part"

[[ $SIZE =~ ^[1-9][0-9]*$ ]] || die "TEXT8_SIZE must be a positive byte count, not '$SIZE'"
if [[ $SIZE != "$DEFAULT_SIZE" ]]; then
  echo "$PROG: note: TEXT8_SIZE=$SIZE replaces the expected size $DEFAULT_SIZE" >&2
fi
[[ -e $DIR ]] || die "directory '$DIR' does not exist; create it (mkdir -p '$DIR') or pass" \
  "another DIR"
[[ -d $DIR ]] || die "'$DIR' is not a directory; pass the directory to save text8.zip in"
[[ -w $DIR ]] || die "directory '$DIR' is not writable; pass a directory you can write to"
if ! command -v unzip > /dev/null && ! command -v python3 > /dev/null; then
  die "cannot check the zip: install unzip (or python3)"
fi

if [[ -e $TARGET || -L $TARGET ]]; then
  if [[ -f $TARGET ]] && (($(file_size "$TARGET") == SIZE)) && zip_ok "$TARGET"; then
    echo "Found and verified text8.zip"
    exit 0
  fi
  die "'$TARGET' is not the expected text8.zip ($SIZE bytes, a zip holding 'text8');" \
    "move it away or delete it, then rerun"
fi

if [[ -t 2 ]]; then  # a progress bar on a terminal, else only errors
  curl_output=(--progress-bar) wget_output=(--quiet --show-progress)
else
  curl_output=(--silent --show-error) wget_output=(--no-verbose)
fi
if command -v curl > /dev/null; then
  fetch=(curl --fail --location --connect-timeout 20 --retry 2 "${curl_output[@]}"
    -C - -o "$PART" "$URL")
elif command -v wget > /dev/null; then
  fetch=(wget --connect-timeout=20 --read-timeout=60 --tries=3 "${wget_output[@]}"
    -c -O "$PART" "$URL")
else
  die "neither curl nor wget is installed; install one of them (e.g. apt-get install curl)"
fi

# The download runs in the background so that SIGTERM, not only Ctrl-C, reaches the trap at once.
child=
on_signal() {
  if [[ -n $child ]]; then
    kill "$child" 2> /dev/null || true
    wait "$child" 2> /dev/null || true
  fi
  echo "$PROG: interrupted; the partial download '$PART' is kept and rerunning resumes it" >&2
  exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

have=0
[[ -f $PART ]] && have=$(file_size "$PART")
if ((have > SIZE)); then
  echo "$PROG: note: removing '$PART' ($have bytes, more than $SIZE) and starting again" >&2
  rm -f -- "$PART"
  have=0
fi
if ((have < SIZE)); then
  if ((have == 0)); then
    echo "Downloading $URL into $PART"
  else
    echo "Resuming $URL into $PART at byte $have of $SIZE"
  fi
  "${fetch[@]}" & child=$!
  status=0
  wait "$child" || status=$?
  child=
  if ((status != 0)); then
    if [[ -s $PART ]]; then
      die "could not download $URL (${fetch[0]} exit code $status, see above); no text8.zip" \
        "was made; the partial download '$PART' is kept and rerunning resumes it"
    fi
    rm -f -- "$PART"
    die "could not download $URL (${fetch[0]} exit code $status, see above); no text8.zip was made"
  fi
fi

have=$(file_size "$PART")
if ((have != SIZE)); then
  rm -f -- "$PART"
  die "$URL sent $have bytes, not the expected $SIZE; removed '$PART'; check TEXT8_URL" \
    "(or TEXT8_SIZE) and rerun"
fi
if ! zip_ok "$PART"; then
  rm -f -- "$PART"
  die "the download from $URL is not a sound zip holding 'text8'; removed '$PART'; rerun" \
    "to download it again"
fi
mv -f -- "$PART" "$TARGET"
echo "Found and verified text8.zip"
