

mig-finish€Ð•ÿ¼1Ò4
$c0ffee00-1234-4abc-8def-0123456789ab
compute-03