# session 4, call 3 (carry .fa4c): the CuTe DSL wheel's second third
mkdir -p /tmp/fa4 && cp .fa4c/part.ab /tmp/fa4/ && ls -la /tmp/fa4
