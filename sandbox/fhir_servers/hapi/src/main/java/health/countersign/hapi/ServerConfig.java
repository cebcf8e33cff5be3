package health.countersign.hapi;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.config.HapiJpaConfig;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.provider.JpaSystemProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.interceptor.RequestValidatingInterceptor;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import jakarta.persistence.EntityManagerFactory;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.util.Properties;
import javax.sql.DataSource;
import org.apache.commons.dbcp2.BasicDataSource;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;

/**
 * The Spring beans of a plain HAPI FHIR R4 JPA server: HAPI's own configuration classes (DAOs, search,
 * terminology, batch jobs) plus what they expect the application to supply: a database, an entity
 * manager, settings, and the REST servlet. Everything is HAPI's default except where noted.
 */
@Configuration
@Import({
	JpaR4Config.class,
	HapiJpaConfig.class,
	ThreadPoolFactoryConfig.class,
	JpaBatch2Config.class, // batch jobs HAPI runs itself (reindexing after a SearchParameter change, ...)
	Batch2JobsConfig.class,
	SubscriptionChannelConfig.class, // the in-memory message channels those jobs use
	Validation.class
})
public class ServerConfig {

	/** H2 in memory, kept for the life of the JVM; each server process has its own empty database. */
	@Bean
	public DataSource dataSource() {
		BasicDataSource dataSource = new BasicDataSource();
		dataSource.setDriver(new org.h2.Driver());
		dataSource.setUrl("jdbc:h2:mem:hapi;DB_CLOSE_DELAY=-1");
		dataSource.setMaxTotal(10);
		return dataSource;
	}

	@Bean
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			ConfigurableListableBeanFactory beanFactory, FhirContext fhirContext, JpaStorageSettings settings) {
		LocalContainerEntityManagerFactoryBean factory =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, settings);
		factory.setPersistenceUnitName("HAPI_PU");
		factory.setDataSource(dataSource());
		Properties jpa = new Properties();
		jpa.put("hibernate.dialect", HapiFhirH2Dialect.class.getName());
		jpa.put("hibernate.hbm2ddl.auto", "update"); // creates the schema in the empty database
		jpa.put("hibernate.search.enabled", "false"); // no Lucene/Elasticsearch full-text index
		factory.setJpaProperties(jpa);
		return factory;
	}

	@Bean
	@Primary
	public JpaTransactionManager transactionManager(EntityManagerFactory entityManagerFactory) {
		return new JpaTransactionManager(entityManagerFactory);
	}

	/**
	 * HAPI's defaults: referential integrity on write and delete, no external references, no placeholder
	 * targets, client-assigned ids that are not purely numeric (ClientIdStrategyEnum.ALPHANUMERIC).
	 */
	@Bean
	public JpaStorageSettings storageSettings() {
		return new JpaStorageSettings();
	}

	/** One partition (HAPI's default); HAPI's entity manager asks for these settings. */
	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings();
	}

	@Bean
	public RestfulServer restfulServer(
			FhirContext fhirContext,
			ResourceProviderFactory resourceProviders,
			JpaSystemProvider<?, ?> systemProvider,
			IFhirSystemDao<?, ?> systemDao,
			JpaStorageSettings settings,
			ISearchParamRegistry searchParamRegistry,
			DatabaseBackedPagingProvider pagingProvider,
			FhirInstanceValidator validator) {
		RestfulServer server = new RestfulServer(fhirContext);
		server.registerProviders(resourceProviders.createProviders());
		server.registerProvider(systemProvider); // transaction/batch Bundles, history, $meta ...
		server.setServerConformanceProvider(new JpaCapabilityStatementProvider(
				server, systemDao, settings, searchParamRegistry, validator.getValidationSupport()));
		server.setPagingProvider(pagingProvider);

		// Every resource in a request body (create, update, transaction/batch Bundle, operation) is validated;
		// an error refuses the request (422 + OperationOutcome), warnings and information let it through.
		// $validate is left to report on its own (200 + an OperationOutcome listing any errors).
		RequestValidatingInterceptor requestValidator = new RequestValidatingInterceptor() {
			@Override
			public boolean incomingRequestPostProcessed(
					RequestDetails request, HttpServletRequest servletRequest, HttpServletResponse servletResponse) {
				return "$validate".equals(request.getOperation())
						|| super.incomingRequestPostProcessed(request, servletRequest, servletResponse);
			}
		};
		requestValidator.addValidatorModule(validator);
		requestValidator.setFailOnSeverity(ResultSeverityEnum.ERROR);
		server.registerInterceptor(requestValidator);
		return server;
	}
}
