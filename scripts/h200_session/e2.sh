# session 3, lease 2, call 2 (carry .fa4c): its second third
mkdir -p /tmp/fa4 && cp .fa4c/part.ab /tmp/fa4/ && ls -la /tmp/fa4
