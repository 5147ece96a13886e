
seed-sg-port´ž„ç£4"n1â/
$6f1c2a3e-4b5d-4e6f-8a7b-9c0d1e2f3a4bdbweb