#!/bin/sh
# fuzz/run.sh BUILD SECONDS TARGET...: runs each libFuzzer target BUILD/fuzz_TARGET for SECONDS
# seconds, one after the other (the machine is shared), and prints one line per target with its
# executions and executions per second. Seeds come from spec/fixtures (made afresh each run in
# BUILD/seeds/); what a run discovers is kept in BUILD/corpus/ for the next one. A crash or a
# failed property stops nothing else but fails the whole run; its input is saved in
# BUILD/crashes/ and can be replayed with `BUILD/fuzz_TARGET FILE`.
set -u
build=$1
secs=$2
shift 2
fixtures=spec/fixtures
status=0

# Writes the seeds of target $1 into directory $2.
seeds() {
  t=$1 dir=$2
  rm -rf "$dir" && mkdir -p "$dir"
  case $t in
  image)
    cp "$fixtures"/*.png "$fixtures"/*.jpg "$fixtures"/*.webp "$dir"/ ;;
  b64)
    for f in "$fixtures"/*.png "$fixtures"/*.jpg "$fixtures"/*.webp; do
      head -c 1500 "$f" | base64 -w0 >"$dir/$(basename "$f").b64"
    done
    for s in "" "QQ==" "QUI=" "QUJD" "QR==" "QUJ=" "QQ=A" "Q===" "QUJDRA" "QUJD====" "QU JD"; do
      printf '%s' "$s" >"$dir/edge-$(printf '%s' "$s" | od -An -tx1 | tr -d ' \n')"
    done ;;
  data_uri)
    for f in "$fixtures"/*.png "$fixtures"/*.jpg "$fixtures"/*.webp; do
      ext=${f##*.}; [ "$ext" = jpg ] && ext=jpeg
      { printf 'data:image/%s;base64,' "$ext"; head -c 600 "$f" | base64 -w0; } >"$dir/$(basename "$f").uri"
    done
    printf 'DATA:;BASE64,QUJD' >"$dir/upper"
    printf 'data:text/plain,abc' >"$dir/not-base64"
    printf 'data:image/png;base64' >"$dir/no-comma" ;;
  utf8)
    cp "$fixtures"/make.sh "$dir"/
    for f in "$fixtures"/*.png "$fixtures"/*.jpg; do head -c 256 "$f" >"$dir/$(basename "$f").head"; done
    printf 'h\303\251llo w\303\266rld \342\234\223 \360\235\204\236 \346\227\245\346\234\254' >"$dir/mixed"
    printf '\355\240\200 \300\200 \364\220\200\200 \340\237\277' >"$dir/invalid" ;;
  elide)
    # Two bytes, 02 80: the limit 64 (the 02) and no '*' expansion (the 80 bit); then a
    # submit answer that echoes an image, one with escapes, one cut off inside the image.
    for f in "$fixtures"/*.png "$fixtures"/*.jpg; do
      { printf '\002\200{"images":["data:image/png;base64,'; head -c 300 "$f" | base64 -w0 | sed 's|/|\\/|g'
        printf '"],"task_id":"1","prompt":"a \\"data:x\\\\"}'; } >"$dir/$(basename "$f").json"
    done
    { printf '\002\200 [ "DATA:text/plain,'; head -c 200 "$fixtures"/png_33x17.png | base64 -w0; } >"$dir/open" ;;
  esac
}

for t in "$@"; do
  bin=$build/fuzz_$t log=$build/$t.log corpus=$build/corpus/$t crashes=$build/crashes
  mkdir -p "$corpus" "$crashes"
  seeds "$t" "$build/seeds/$t"
  "$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$crashes/$t-" "$corpus" "$build/seeds/$t" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  if [ "$rc" -eq 0 ]; then
    printf 'fuzz %-8s %10s execs in %s s (%s execs/s), corpus %s inputs, no crash\n' \
      "$t" "${execs:-?}" "$secs" "${rate:-?}" "$(ls "$corpus" | wc -l)"
  else
    echo "fuzz $t: FAILED (exit $rc) after ${execs:-?} execs; log $log"
    grep -E 'property failed|ERROR:|runtime error|SUMMARY' "$log" | head -n 5
    ls "$crashes"/"$t"-* 2>/dev/null | sed 's/^/  input: /'
    status=1
  fi
done
exit $status
