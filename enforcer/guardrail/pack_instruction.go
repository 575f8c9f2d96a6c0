package guardrail

// Pack instruction-override: text that tells the reader to drop the
// instructions it has and follow new ones. Patterns are written against
// normalised text (see expand for the pattern language). Each rule covers
// English, German, French, Spanish, Portuguese, Chinese and Russian, and
// some rules Italian, Dutch and Japanese.
//
// False positives are kept down by asking for more than a trigger word:
// "ignore" needs a qualifier ("previous", "all", "your") and an object
// that is an instruction ("instructions", "system prompt"), so "ignore
// the previous chart" and "ignore all rules for this file" do not match.

const (
	// English verbs that drop instructions.
	enDrop = `(?:ignore|ignoring|disregard|disregarding|forget|forgetting|skip|override|overrule|bypass|discard|abandon|neglect|drop|set aside|pay no (?:attention|heed) to|(?:do[ \-]not|don't|dont|stop|no[ \-]longer) (?:follow(?:ing)?|obey(?:ing)?|adher(?:e|ing) to|compl(?:y|ying) with|listen(?:ing)? to)|throw out|scrap)`
	// The strong ones, for "ignore the above" and the like.
	enDropStrong = `(?:ignore|disregard|forget|pay no (?:attention|heed) to|(?:do[ \-]not|don't|dont|no[ \-]longer) (?:follow|obey)|override|overrule|bypass)`
	enFill       = `(?:all|any|every|each|of|the|your|my|our|these|those|its|this|that|prior|such|entire|whole|above|following)`
	enQual       = `(?:previous|previously (?:given|provided|stated|received)|prior|above|earlier|preceding|foregoing|original|initial|existing|former|old|past|pre-?existing|system|developer|safety|built-in|hidden|core|base)`
	enNoun       = `(?:instructions?|prompts?|directions|directives?|guidelines?|rules|commands|orders|guidance|context|constraints|restrictions|programming|polic(?:y|ies)|training|safeguards|guardrails|system (?:prompt|message)s?|messages|conversation|text|input|content|tasks?)`
	enNounStrict = `(?:instructions|directives|guidelines|programming|system prompts?|guardrails|safeguards|restrictions|safety (?:rules|guidelines|filters|polic(?:y|ies)|measures)|training|constraints|rules|principles|ethic(?:s|al guidelines)|limitations|content polic(?:y|ies)|prompt)`

	deDrop = `(?:ignorier(?:e|en sie|t|st)?|missachte(?:n sie|t)?|vergiss|vergesst|vergessen sie|übergehe(?:n sie)?|verwirf|verwerfen sie|beachte(?:n sie|t)? nicht|befolge(?:n sie|t)? nicht|setze(?:n sie)? ausser kraft)`
	deFill = `(?:bitte|einfach|sofort|jetzt|nun|ab sofort|du|sie|ihr|die|der|den|das|deine|deiner|ihre|ihrer|eure|alle|sämtliche|jegliche|jede|alles|mal)`
	deQual = `(?:vorherigen?|vorige[n]?|bisherigen?|obigen?|früheren?|vorangegangenen?|vorhergehenden?|ursprünglichen?|alten?|gegebenen?|ersten?|alle|sämtliche|jegliche|deine|ihre|eure)`
	deNoun = `(?:anweisung(?:en)?|instruktion(?:en)?|befehle|regeln|vorgaben|anordnungen|systemanweisung(?:en)?|systemprompts?|system-prompts?|richtlinien|aufforderungen|direktiven|einschränkungen|prompts?)`

	frDrop = `(?:ignore[rsz]?|oublie[rsz]?|ne·(?:tiens|tenez) (?:plus )?pas compte|ne·(?:tiens|tenez) plus compte|(?:fais|faites) abstraction|(?:fais|faites) fi|n'obéis plus|n'obéissez plus|ne·(?:suis|suivez) plus|ne·(?:suis|suivez) pas|outrepasse[rz]?|écarte[rz]?)`
	frFill = `(?:de|des|d|du|la|l|les|ces|simplement|maintenant|donc|à|aux)`
	frDet  = `(?:toutes|tous|toute|tes|vos|ton|ta|votre)`
	frNoun = `(?:consignes?|instructions?|directives?|règles|ordres|commandes|indications|prompts?|invites?|messages)`
	frQual = `(?:précédentes?|precedentes?|antérieures?|ci-dessus|initiales?|d'origine|originales?|système|du système|reçues|données|qui précèdent|d'avant|passées)`

	esDrop = `(?:ignora[rd]?|ignore[n]?|olvida[rd]?|olvide[n]?|omite|omita[n]?|descarta|descarte|desestima|desobedece|haz caso omiso (?:de|a)|no·(?:hagas|haga|hagan) caso (?:de|a)|no·sigas|no·siga[n]?|deja de seguir)`
	esFill = `(?:de|del|a|al|las|los|la|el|estas|esas|estos|simplemente|ahora|ya|más)`
	esDet  = `(?:todas|todos|tus|sus|toda)`
	esNoun = `(?:instrucciones|instrucción|indicaciones|órdenes|reglas|directrices|directivas|pautas|prompts?|mensajes|consignas|normas)`
	esQual = `(?:anteriores|previas|de arriba|iniciales|originales|del sistema|recibidas|dadas|precedentes|que (?:te|le|les) (?:dieron|di|han dado))`

	ptDrop = `(?:ignore[m]?|ignora[r]?|esqueça[m]?|esqueca[m]?|esquece[r]?|desconsidere[m]?|desconsidera[r]?|despreze|descarte|(?:não|nao) (?:siga[m]?|obedeça|obedeca|cumpra)|deixe de seguir)`
	ptFill = `(?:de|das|dos|as|os|a|o|estas|essas|estes|simplesmente|agora|já|mais|nunca)`
	ptDet  = `(?:todas|todos|suas|seus|tuas|teus|toda)`
	ptNoun = `(?:instruções|instrucoes|instrução|instrucao|orientações|orientacoes|ordens|regras|diretrizes|diretivas|comandos|prompts?|mensagens|normas)`
	ptQual = `(?:anteriores|prévias|previas|acima|iniciais|originais|do sistema|recebidas|dadas|precedentes)`

	ruDrop = `(?:игнорируй(?:те)?|проигнорируй(?:те)?|забудь(?:те)?|не обращай(?:те)? внимания на|отбрось(?:те)?|отмени(?:те)?|не следуй(?:те)?|не выполняй(?:те)?|пренебреги(?:те)?|не слушай(?:те)?|перестань(?:те)? следовать)`
	ruFill = `(?:все|всё|всем|всех|свои|своих|ваши|ваших|твои|твоих|эти|те|любые|прошлые|прошлых|предыдущие|предыдущих|прежние|прежних|вышеуказанные|вышеизложенные|изначальные|исходные|ранее|полученные|данные|системные|системных|старые|старых|данные тебе|данные вам)`
	ruNoun = `(?:инструкци(?:и|й|ям)|указани(?:я|й|ям)|команд(?:ы|ам)?|правил(?:а|ам)?|распоряжени(?:я|й)|установк(?:и|ам)|промпт(?:ы)?|системный промпт|настройк(?:и|ам)|ограничени(?:я|й|ям)|директив(?:ы)?)`

	zhDrop = `(?:忽略|忽视|无视|不要理会|不要理睬|不要管|别管|不用理会|不必理会|抛开|抛弃|丢弃|放弃|忘掉|忘记|忘了|跳过|绕过|违背|不再遵守|不要遵守|不要遵循|停止遵循)`
	zhQual = `(?:之前|以前|先前|此前|上面|上述|以上|前面|前述|原来|原有|原先|最初|初始|所有|全部|一切|这些|那些|系统)`
	zhNoun = `(?:指令|指示|说明|提示词|提示|命令|规则|设定|要求|约束|限制|系统提示|对话|内容|规定|准则)`
)

func instructionOverrideRules() []ruleDef {
	return []ruleDef{{
		name:        "ignore-previous",
		desc:        "tells the reader to ignore, forget or override its previous instructions, system prompt or rules",
		sev:         High,
		instruction: true,
		patterns: []string{
			// ignore (all) (the) previous instructions
			enDrop + `(?: ` + enFill + `){0,3} ` + enQual + `(?: (?:set of|given|system|safety|user|and (?:current|future)))? ` + enNoun,
			// ignore all instructions you were given before
			enDrop + `(?: ` + enFill + `){0,3} ` + enNoun + `(?: (?:that|which))?(?: you(?: (?:were|have been|'ve been|got|received|had)))?(?: (?:given|provided|received|told|stated|written|sent|set|gave))? (?:before|previously|earlier|above|so far|until now|prior to (?:this|now)|up to (?:this point|now)|beforehand)\b`,
			// set aside the rules you were configured with
			enDrop + `(?: ` + enFill + `){0,3} ` + enNoun + `(?: (?:that|which))? you(?:'ve| have| were| had)?(?: (?:been|were))? (?:given|provided|configured with|programmed with|trained with|instructed with|set up with|told|handed|loaded with)\b`,
			// ignore your instructions / ignore all of your rules
			enDrop + ` (?:all (?:of )?)?your(?: (?:current|existing|original|initial|core|safety|system|built-in|own|programmed|previous|prior|hidden))? ` + enNounStrict,
			// ignore all instructions
			enDrop + ` all(?: (?:the|of the))? (?:instructions|directives|guidelines|guardrails|safeguards|safety (?:rules|guidelines|filters|polic(?:y|ies))|system prompts?|restrictions)`,
			// ignore the above / ignore everything before this
			enDropStrong + ` (?:all (?:of )?)?(?:the above|everything (?:above|before|prior|said|written|so far|until now|you (?:were|have been) told)|what (?:was|has been|i|we|you were|you have been|you've been) (?:said|told|written|given|instructed) (?:above|before|earlier|previously|so far)|anything (?:above|before|said|you were told)|all that came before)(?: (?:and|instructions|text|prompt|this))?`,
			// German: ignoriere alle vorherigen Anweisungen
			deDrop + `(?: ` + deFill + `){0,3} ` + deQual + `(?: ` + deFill + `){0,2} ` + deNoun,
			// German, verb last: alle vorherigen Anweisungen ignorieren
			`(?:alle|sämtliche|jegliche|die|deine|ihre) (?:vorherigen|bisherigen|obigen|früheren|ursprünglichen|vorangegangenen) ` + deNoun + `(?: \pL+){0,2} (?:ignorieren|vergessen|missachten|nicht (?:mehr )?(?:befolgen|beachten))`,
			`vergiss(?:t)? alles,? (?:was|das) (?:dir|ihnen|du|euch)(?: \pL+){0,3} (?:gesagt|mitgeteilt|aufgetragen|gegeben|erhalten|gelernt|befohlen)`,
			// French
			frDrop + `(?: ` + frFill + `){0,2} ` + frDet + `(?: ` + frFill + `){0,2} ` + frNoun,
			frDrop + `(?: ` + frFill + `){0,3} ` + frNoun + ` ` + frQual,
			`oublie[rz]? tout ce (?:qu'on t'a|que l'on t'a|qu'on vous a|que l'on vous a|que je t'ai|que je vous ai|qui a été|qui précède|qui precede)(?: \pL+)?`,
			// Spanish
			esDrop + `(?: ` + esFill + `){0,2} ` + esDet + `(?: ` + esFill + `){0,2} ` + esNoun,
			esDrop + `(?: ` + esFill + `){0,3} ` + esNoun + ` ` + esQual,
			`olvida[rd]? todo lo (?:que )?(?:anterior|(?:te|le|les) (?:han|hayan|he|hemos) (?:dicho|indicado|pedido|ordenado))`,
			// Portuguese
			ptDrop + `(?: ` + ptFill + `){0,2} ` + ptDet + `(?: ` + ptFill + `){0,2} ` + ptNoun,
			ptDrop + `(?: ` + ptFill + `){0,3} ` + ptNoun + ` ` + ptQual,
			`esque(?:ç|c)a[m]? tudo (?:o )?(?:que|isso|acima|anterior)(?: (?:te|lhe|foi) (?:disseram|dito|foi dito|pediram))?`,
			// Chinese
			zhDrop + `\s*(?:掉|了)?\s*(?:你|您)?\s*(?:的)?\s*` + zhQual + `\s*(?:的)?\s*(?:所有|全部|一切)?\s*(?:的)?\s*` + zhNoun,
			`(?:之前|以前|上面|上述|以上|前面|所有|原来)的?(?:所有|全部)?(?:指令|指示|提示|规则|命令|设定)(?:都|全部|统统|已经)?(?:作废|无效|失效|不再有效|不再适用|可以忽略|取消)`,
			// Russian
			ruDrop + `(?: ` + ruFill + `){1,3} ` + ruNoun,
			`забудь(?:те)? (?:всё|все|то),? (?:что|чему) (?:тебе|вам|тебя|вас)(?: \pL+){0,2} (?:говорили|сказали|писали|было сказано|учили|приказали|велели)`,
			// Italian, Dutch, Japanese
			`(?:ignora|ignorate|dimentica|dimenticate|trascura|trascurate)(?: (?:tutte|tutti|le|gli|i|tue|vostre|ogni)){0,6} (?:istruzioni|indicazioni|regole|direttive|comandi) (?:precedenti|iniziali|di sistema|ricevute|sopra)`,
			`(?:negeer|vergeet)(?: (?:alle|de|je|jouw|uw)){0,6} (?:vorige|eerdere|voorgaande|bovenstaande|oorspronkelijke|systeem)(?:-| )?(?:instructies|opdrachten|regels|aanwijzingen|prompt)`,
			`(?:以前|前|上記|これまで|先ほど|今まで)の(?:すべての|全ての)?(?:指示|命令|指令|ルール|プロンプト|設定)を(?:すべて|全て)?(?:無視|忘れ)`,
		},
	}, {
		name:        "reset-context",
		desc:        "tells the reader to wipe its memory, context or programming",
		sev:         High,
		instruction: true,
		patterns: []string{
			`(?:forget|wipe|erase|clear|reset|purge|delete|flush) (?:all |everything )?(?:of )?(?:your|you've|you have) (?:(?:previous|prior|past|current|entire|whole|existing|original) )?(?:instructions|memory|memories|context|programming|training|system prompt|rules|knowledge|guidelines|directives|conditioning|prompt)`,
			`forget (?:everything|all|anything)(?: that)? (?:you (?:know|knew|learned|were told|have been told|'ve been told|were given|were instructed)|(?:was |has been |i |we )?(?:said|told|written|instructed) (?:before|above|earlier|so far|previously))`,
			`(?:setze|setzen sie) (?:deine|ihre|den|das) (?:gedächtnis|kontext|speicher|programmierung|anweisungen) zurück`,
			`(?:efface|effacez|réinitialise|réinitialisez) (?:ta|votre|ton|tes|vos) (?:mémoire|contexte|programmation|instructions)`,
			`(?:borra|borre|reinicia|reinicie|resetea) (?:tu|su|tus|sus) (?:memoria|contexto|programación|instrucciones)`,
			`(?:apague|apaga|reinicie|reinicia|limpe|limpa|zere) (?:sua|seu|tua|teu|suas|seus) (?:memória|memoria|contexto|programação|instruções)`,
			`(?:清除|清空|重置|删除|抹去)(?:你的|您的)(?:记忆|上下文|设定|指令|编程|系统提示)`,
			`(?:сотри|сотрите|очисти|очистите|сбрось|сбросьте) (?:свою|свои|вашу|ваши|твою|твои) (?:память|контекст|настройки|инструкции|программу)`,
		},
	}, {
		name:        "new-instructions",
		desc:        "announces replacement instructions, a new system prompt, or the reader's real task",
		sev:         Medium,
		instruction: true,
		patterns: []string{
			`(?:your|the) (?:new|real|actual|true|updated|revised|secret|hidden|override) (?:instructions|directives|orders|system prompt|prime directive|operating instructions)(?: (?:are|is|will be|follow|below|now)|~:)`,
			`your (?:real|true|actual|secret|hidden) (?:task|objective|goal|mission|purpose|job|instructions) (?:is|are|:|will be)`,
			`(?:everything|all(?: the)? (?:text|content|instructions)|the (?:text|instructions|prompt|rules|content)|anything) (?:above|before|preceding)(?: (?:this|the) (?:line|point|message|marker|sentence))? (?:is|was|are|were) (?:(?:now|all|just|only) )?(?:outdated|obsolete|void|null|invalid|fake|false|a test|irrelevant|cancell?ed|revoked|no longer (?:valid|relevant|in effect)|superseded|deprecated)`,
			`(?:the·)?(?:previous|prior|above|earlier|original|initial|preceding) (?:instructions?|prompts?|system prompt|system message|directives?|directions) (?:is|was|are|were) (?:(?:just|only|all|merely) )?(?:outdated|obsolete|void|null|invalid|fake|false|a test|a decoy|irrelevant|cancell?ed|revoked|no longer (?:valid|relevant|in effect)|superseded)`,
			`(?:new|updated|revised|override|replacement) system (?:prompt|instructions|message)~[:\-=]`,
			`from now on,? you (?:will|must|shall|are to|should|have to) (?:only )?(?:ignore|obey|disregard|act as|pretend|respond only (?:to|with|in)|answer only|reply only|follow only|comply with|do whatever|do anything|always (?:answer|comply|obey|say))`,
			`(?:deine|ihre|eure) neuen? (?:anweisungen|instruktionen|befehle|regeln|aufgaben?) (?:sind|lauten|ist|lautet|folgen)`,
			`(?:tes|vos) nouvelles? (?:instructions|consignes|directives|règles|ordres) (?:sont|:|suivent)`,
			`(?:tus|sus) nuevas? (?:instrucciones|órdenes|directrices|reglas|indicaciones) (?:son|:|serán)`,
			`(?:suas|tuas|seus|teus) nov(?:as|os) (?:instruções|instrucoes|ordens|diretrizes|regras|comandos) (?:são|sao|:|serão)`,
			`(?:你的|您的)新(?:的)?(?:指令|指示|系统提示|规则)(?:是|如下|为)`,
			`(?:твои|ваши) новые (?:инструкции|указания|правила|команды|директивы)(?: (?:такие|следующие|таковы)|~:)`,
			`从现在(?:开始|起),?\s*你(?:只|必须|要|将)?(?:只)?(?:听从|服从|遵守|执行)(?:我的?|以下)`,
			`(?:ab·(?:sofort|jetzt)|von·nun·an),? (?:wirst|musst|sollst) du (?:nur noch |ausschliesslich )?(?:mir gehorchen|gehorchen|ignorieren|alles tun)`,
		},
	}, {
		name:        "priority-claim",
		desc:        "claims to override or take precedence over the reader's other instructions",
		sev:         Medium,
		instruction: true,
		patterns: []string{
			`(?:this|these|the following|my|new) (?:instructions?|message|directives?|commands?|orders?|rules?|prompt|text) (?:take|takes|has|have|get|gets|carry|carries|must take|shall take) (?:the )?(?:highest |top |absolute |full |first |overriding )?(?:priority|precedence)`,
			`(?:supersedes?|overrides?|overrules?|supersede) (?:all |any |every )?(?:the |your )?(?:previous|prior|earlier|other|existing|original|system|above|developer) (?:instructions|directives|prompts?|guidelines|commands|rules|system prompt)`,
			`(?:admin|administrator|developer|system|emergency|root|sudo|priority|master) override~(?::|!|\]|=|\)|—|(?: (?:mode|protocol|engaged|activated|enabled|granted|in effect|code|command|instruction|accepted|confirmed)))`,
			`(?:diese|folgende) (?:anweisung|nachricht|anweisungen) (?:hat|haben) (?:höchste |absolute )?(?:priorität|vorrang)`,
			`(?:cette|ces) (?:instructions?|message|consignes?) (?:a|ont|prend|prennent) (?:la )?(?:priorité|préséance)(?: absolue)?`,
			`(?:esta|estas) (?:instrucción|instrucciones|mensaje|orden) (?:tiene|tienen) (?:máxima |absoluta )?(?:prioridad|precedencia)`,
			`(?:esta|estas) (?:instrução|instruções|mensagem|ordem) (?:tem|têm) (?:máxima |absoluta )?(?:prioridade|precedência)`,
			`(?:此|这条|本)(?:指令|消息|命令)(?:具有)?(?:最高)?优先(?:级)?(?:高于|覆盖)`,
			`(?:эта|эти|данная) (?:инструкция|инструкции|команда|сообщение) (?:имеет|имеют) (?:наивысший |высший |абсолютный )?приоритет`,
		},
	}, {
		name:        "addressed-to-ai",
		desc:        "text in content that addresses the AI reading it (\"if you are an AI\", \"note to the LLM:\"), the mark of an indirect injection",
		sev:         Medium,
		instruction: true,
		patterns: []string{
			`(?:if·you·are|if·you're|if·youre|if·you·happen·to·be|in·case·you·are) an? (?:ai|a\.i\.|llm|large language model|language model|ai (?:assistant|agent|model|system|bot)|automated (?:assistant|agent|system)|chatbot|ai-powered (?:assistant|agent|tool))(?: (?:reading|processing|summari[sz]ing|parsing|analy[sz]ing|reviewing|scanning|handling|seeing) (?:this|these)|~,? (?:you must|you should|please|ignore|disregard|do not|don't|stop|then|respond|reply|include|add|say|output|forward|send|make sure|always|never|you will))`,
			`(?:note|message|instructions?|attention|notice|memo|reminder|hey|hello|dear|psst|important)~(?:to|for)? (?:the |any |all |every )?(?:ai|a\.i\.|llm|large language model|language model|ai (?:assistant|agent|model|system|bot)|automated (?:assistant|agent|system)|chatbot|assistant reading this|model reading this|agent reading this)s?~(?:reading|processing|summari[sz]ing|parsing|analy[sz]ing|reviewing)?~(?:this|these)?~(?:text|document|page|email|e-mail|message|content|file)?~[:,—\-!]`,
			`(?:wenn|falls) du (?:eine |ein )?(?:ki|künstliche intelligenz|sprachmodell|ki-assistent|ki-agent|llm|chatbot)(?: bist)?~[,:]`,
			`(?:hinweis|nachricht|anweisung) (?:an|für) (?:die |das |den )?(?:ki|sprachmodell|llm|ki-assistenten|ki-agenten)~:`,
			`(?:si·tu·es|si·vous·êtes|si·vous·etes) (?:une |un )?(?:ia|intelligence artificielle|llm|modèle de langage|assistant ia|agent ia|chatbot)~[,:]`,
			`(?:note|message|instruction) (?:pour|à) (?:l'|la |le )?(?:ia|llm|modèle|assistant ia)~:`,
			`(?:si·eres|si·usted·es) (?:una |un )?(?:ia|inteligencia artificial|llm|modelo de lenguaje|asistente de ia|agente de ia|chatbot)~[,:]`,
			`(?:nota|mensaje|instrucción) para (?:la |el )?(?:ia|llm|modelo|asistente de ia)~:`,
			`(?:se·você|se·voce|se·tu) (?:é|e|for|és) (?:uma |um )?(?:ia|inteligência artificial|inteligencia artificial|llm|modelo de linguagem|assistente de ia|agente de ia|chatbot)~[,:]`,
			`(?:nota|mensagem|instrução) para (?:a |o )?(?:ia|llm|modelo|assistente de ia)~:`,
			`如果你是(?:一个)?(?:ai|人工智能|语言模型|大模型|大语言模型|ai助手|ai代理|聊天机器人)`,
			`(?:致|给)(?:ai|人工智能|语言模型|大模型)(?:的)?(?:提示|说明|指令|消息)?\s*:`,
			`если (?:ты|вы) (?:—|-)?\s*(?:ии|ai|языковая модель|нейросеть|ии-ассистент|ии-агент|чат-бот|бот)~[,:]`,
			`(?:примечание|сообщение|заметка|инструкция) для (?:ии|ai|нейросети|языковой модели|ии-ассистента)~:`,
		},
	}, {
		name:        "task-hijack",
		desc:        "tells the reader not to do the task it was given with this content, and to do something else instead",
		sev:         Medium,
		instruction: true,
		patterns: []string{
			`(?:do[ \-]not|don't|dont|stop|instead·of) (?:summari[sz]\pL*|translat\pL*|analy[sz]\pL*|review\pL*|answer\pL*|respond\pL* to|process\pL*|classif\pL*|read\pL*|evaluat\pL*|grad\pL*|rank\pL*|score\pL*) (?:this|the|that|any) (?:text|document|email|e-mail|page|message|content|article|file|input|request|resume|cv|application|review)~(?:\.|,|;|:|!)?~(?:instead|rather)\b`,
			`(?:fasse|übersetze|bewerte) (?:diesen|dieses|diese) (?:text|dokument|e-mail|nachricht) nicht zusammen~[.,;:!]?~(?:stattdessen|sondern)`,
			`ne·(?:résume|résumez|traduis|traduisez|analyse|analysez) pas (?:ce|cet|cette) (?:texte|document|e-mail|email|message)~[.,;:!]?~(?:à la place|plutôt|mais)`,
			`no·(?:resumas|traduzcas|analices|resuma|traduzca) (?:este|esta|el|la) (?:texto|documento|correo|mensaje)~[.,;:!]?~(?:en su lugar|en cambio|sino)`,
			`(?:não|nao) (?:resuma|traduza|analise) (?:este|esta|o|a) (?:texto|documento|e-mail|email|mensagem)~[.,;:!]?~(?:em vez disso|ao invés disso|mas)`,
			`不要(?:总结|翻译|分析|处理)(?:这|此|该)(?:段|篇|封|个)?(?:文本|文档|邮件|内容|消息)?[,。.]?\s*(?:而是|相反|改为)`,
			`не (?:пересказывай|переводи|анализируй|суммируй) (?:этот|это|эту|данный) (?:текст|документ|письмо|сообщение)~[.,;:!]?~(?:вместо этого|а)`,
		},
	}}
}
