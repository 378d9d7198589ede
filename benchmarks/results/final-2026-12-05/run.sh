#!/bin/bash
# ResNet-18 side by side: the session's base commit vs merged main, alternating, both modes, two processes.
for i in 1 2 3; do
  for t in base main; do
    d=/work/wt/base; [ $t = main ] && d=/work/main
    (cd $d && /usr/bin/time -f "%e s wall %U user %S sys" /work/venv/bin/python -m aiompc bench resnet18 --modes cheetah,quantized --network none --no-progress --json /tmp/final/$t-$i.json > /tmp/final/$t-$i.out 2> /tmp/final/$t-$i.err)
    echo "$t $i done $(date +%T) $(uptime | sed 's/.*load/load/')"
  done
done
