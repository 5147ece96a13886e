
seed-limitsïÔŒç£4"n1RÉ
Æ
$6f1c2a3e-4b5d-4e6f-8a7b-9c0d1e2f3a4bweb1t1"/€ (€028@ÈH€€€
P€€ÀX€`€h€p€x€€€*m
debian12http://images.example/d.qcow2@3b7e72edbc9e7c2a3f5d8e0a1b2c3d4e5f60718293a4b5c6d7e8f90123456789 2n
$0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d$1b2c3d4e-5f6a-4b7c-9d8e-9f0a1b2c3d4ed"52:54:00:12:34:56*10.0.0.5/24:web1