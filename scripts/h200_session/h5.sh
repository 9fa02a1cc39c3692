# session 5, call 5 (carry .fia): FlashInfer's first wheel part
mkdir -p /tmp/fi && cp .fia/part.aa /tmp/fi/ && ls -la /tmp/fi
