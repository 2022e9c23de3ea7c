"""How good an explanation is: faithfulness metrics (deletion, insertion, ...) and the evaluate-cam study."""
