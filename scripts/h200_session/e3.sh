# session 3, lease 2, call 3 (carry .fia): the first part of the FlashInfer wheel
mkdir -p /tmp/fi && cp .fia/part.aa /tmp/fi/ && ls -la /tmp/fi
