#!/usr/bin/env bash
# Writes the Book of Revelation (King James Version, from Debian's bible-kjv-text: the book held
# out of models/kjv-mixtral-tiny's training) to OUT, the text `moeserve perplexity` scores: one
# verse per line without its reference ("Rev1:1 "), every line after the first starting with a
# space. That is the layout the model was trained on: each verse encoded on its own (so with
# SentencePiece's leading "▁": "▁And", not "And") followed by the newline token, so the file's
# tokens are exactly those (16017 for Revelation, samples.json's holdout count); without the
# space each line's first word would be a token the model rarely saw there. An optional second
# argument picks another range in the `bible` program's notation, e.g. Gen1:1-Gen10:32
# (training text). Needs the packages bible-kjv and bible-kjv-text (`make deps` installs them).
#
#   scripts/kjv-revelation.sh /tmp/revelation.txt
#   scripts/kjv-revelation.sh /tmp/genesis-1-10.txt Gen1:1-Gen10:32
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 OUT [RANGE (default Rev1:1-Rev22:21)]" >&2
  exit 2
fi
out=$1
range=${2:-Rev1:1-Rev22:21}

if ! command -v bible >/dev/null; then
  echo "$0: the 'bible' program is missing: install bible-kjv and bible-kjv-text (make deps)" >&2
  exit 1
fi

# -f turns pretty-printing off: one "Book1:1 text" line per verse. stdin is closed so that bible
# never waits for interactive commands.
text=$(bible -f "$range" </dev/null)
# Every line must be a verse ("Rev1:1 ..."); anything else is an error message from bible.
if [ -z "$text" ] || printf '%s\n' "$text" | grep -qvE '^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ '; then
  echo "$0: bible printed no verses for '$range':" >&2
  printf '%s\n' "$text" | head -3 >&2
  exit 1
fi
printf '%s\n' "$text" | sed -E -e 's/^[^ ]+ //' -e '1!s/^/ /' >"$out"
echo "$0: wrote $(wc -l <"$out") verses of $range to $out" >&2
