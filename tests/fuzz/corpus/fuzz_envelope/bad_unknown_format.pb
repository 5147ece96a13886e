
req-bad-fmt€Ð•ÿ¼1²£
$3f0c2a6e-8d4b-4c1e-9a57-0b6e2d9f1c33{
	debian-12*https://images.example.com/debian-12.qcow2@9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 