
	req-pause€Ğ•ÿ¼1z&
$3f0c2a6e-8d4b-4c1e-9a57-0b6e2d9f1c33