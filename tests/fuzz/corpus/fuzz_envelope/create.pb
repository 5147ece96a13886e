

req-create€Ð•ÿ¼1RÐ
Í
$3f0c2a6e-8d4b-4c1e-9a57-0b6e2d9f1c33web-1	tenant-42"
m1.small€ *{
	debian-12*https://images.example.com/debian-12.qcow2@9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 2‰
$7b1d4e90-2c3a-4f5b-8e6d-1a2b3c4d5e6f$d00dfeed-5678-4cde-9f01-23456789abcd’!"52:54:00:12:34:56*10.0.0.5/24*10.0.0.6/24210.0.0.18ª2r
$c0ffee00-1234-4abc-8def-0123456789ab$d00dfeed-5678-4cde-9f01-23456789abcd’!"52:54:00:ab:cd:ef*192.168.7.9/32:web-1B>ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0a2V5 alice@exampleJ #cloud-config
packages: [nginx]
R
rolewebR
ownerZoÃ«