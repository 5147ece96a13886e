
	req-empty€Ð•ÿ¼1