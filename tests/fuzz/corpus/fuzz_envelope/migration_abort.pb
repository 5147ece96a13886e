
	mig-abort€Ð•ÿ¼1ÚA
$c0ffee00-1234-4abc-8def-0123456789ab
compute-07	timed out