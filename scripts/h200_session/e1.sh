# session 3, lease 2, call 1 (carry .fa4a): the first third of the CuTe DSL wheel
mkdir -p /tmp/fa4 && cp .fa4a/part.aa /tmp/fa4/ && ls -la /tmp/fa4
