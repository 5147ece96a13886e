
mig-prepared-err€Ð•ÿ¼1ÊI
$c0ffee00-1234-4abc-8def-0123456789ab
compute-07not enough memory