"""Framework-free churn ML core: pandas frames in, scores and explanations out. No Django here."""
