# session 5, call 4 (carry .fa4b): flash-attn-4 installed under /tmp/fa4site
source .fa4b/install.sh && python3 -c "import importlib.metadata as m; print('fa4', m.version('flash-attn-4'))"
