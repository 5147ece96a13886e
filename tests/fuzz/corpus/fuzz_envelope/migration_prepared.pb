
mig-prepared€Ð•ÿ¼1
compute-07ÊH
$c0ffee00-1234-4abc-8def-0123456789ab
compute-07"tcp://10.1.0.7:49152