# session 5, call 3 (carry .fa4c): flash-attn-4's second wheel part
mkdir -p /tmp/fa4 && cp .fa4c/part.ab /tmp/fa4/ && ls -la /tmp/fa4
