# session 3, lease 3 (no carry): the Triton tuner on the held device timer: its GPU test, and its picks
CALL=f1; source scripts/h200_session/common.sh; mkdir -p "$OUT/$CALL"
nvidia-smi --query-gpu=name,uuid --format=csv > "$OUT/$CALL/gpu.csv" 2>&1; cat "$OUT/$CALL/gpu.csv"
# the GPU test's body (the device machine has no pytest): 300 us of host before a 20 us spin
step timer 60 python3 -c "
import time, torch
from attnbench.paths import import_kernels
import_kernels()
from attnbench_kernels.triton import device_timer
cyc = int(20 * device_timer._spin_cycles_per_us(0))
def f():
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 300e-6: pass
    torch.cuda._sleep(cyc)
import triton.testing
print('held_device_ms', device_timer.held_device_ms(f), 'do_bench', triton.testing.do_bench(f, warmup=5, rep=25, return_mode='median'))
"
step tuner 150 python3 scripts/gpu_tuner_check.py "$OUT/$CALL/tuner" --processes 3
cat "$OUT/$CALL/tuner.log"
pack
