#!/bin/bash
# ResNet-18 side by side: this session's start commit (d1ac188) vs merged main, alternating, both modes, two processes.
out=${OUT:-/work/notes/final4}; n=${1:-2}
for i in $(seq 1 $n); do
  for t in base main; do
    d=/work/wt/based1; [ $t = main ] && d=/work/main
    (cd $d && /usr/bin/time -f "%e s wall %U user %S sys" /work/venv/bin/python -m aiompc bench resnet18 --modes cheetah,quantized --network none --no-progress --json $out/$t-$i.json > $out/$t-$i.out 2> $out/$t-$i.err)
    echo "$t $i done $(date +%T) $(uptime | sed 's/.*load/load/')"
  done
done
