#!/usr/bin/env bash
# Runs the notification demo end to end: `dtx server` on a free port with a temporary SQLite store,
# then `notify-payment-example demo` (it starts the gateway and the merchant), then stops the
# server. The exit code is the demo's (0 = the expected outcome). KEEP_TMP=1 keeps the files.
set -uo pipefail
source "$(dirname "$0")/../common/demo_env.sh"

demo_init notify-payment-example examples/notify_payment/notify-payment-example notify-payment-demo
demo_start_dtx 0.2

"$example_bin" demo --dtx "http://127.0.0.1:$port/api/dtmsvr" --data-dir "$tmp/services"
rc=$?

demo_stop_dtx
exit $rc
