# session 4, call 4 (carry .fia): the first part of the FlashInfer wheel
mkdir -p /tmp/fi && cp .fia/part.aa /tmp/fi/ && ls -la /tmp/fi
