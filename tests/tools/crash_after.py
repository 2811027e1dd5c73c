"""Runs an MCP stdio server and dies when the client sends it more than N
`tools/call` requests: `python3 crash_after.py N COMMAND [ARGS...]`.

A server that crashes mid-run, for tests/tools: the (N+1)-th call never
gets an answer; this wrapper writes its last words to stderr, kills the
server and exits 3.
"""

import subprocess
import sys
import threading

limit = int(sys.argv[1])
server = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def pump_out():
    for line in server.stdout:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()


threading.Thread(target=pump_out, daemon=True).start()
calls = 0
for line in sys.stdin.buffer:
    if b'"tools/call"' in line:
        calls += 1
        if calls > limit:
            sys.stderr.write(f"crash-wrapper: giving up after {limit} call(s)\n")
            sys.stderr.flush()
            server.kill()
            sys.exit(3)
    server.stdin.write(line)
    server.stdin.flush()
server.stdin.close()
server.wait()
